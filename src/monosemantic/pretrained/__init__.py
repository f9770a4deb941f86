"""Pretrained SAEs (SAELens and Gemma Scope folders, local or `hf:...`) as run folders.

`RunDir.find` / `RunDir.open(path, model=, hook=)` resolve such a path to a run view
(`view.foreign_view`); `import-sae` writes one where the user says (`commands`).
"""

from monosemantic.pretrained.view import foreign_view, import_run, is_foreign, locate

__all__ = ["foreign_view", "import_run", "is_foreign", "locate"]
