"""The paper's findings across the dictionary sizes of a sweep: dead and ultra-rare features
(`dead`), feature splitting with family trees (`splitting`), and a generated report (`report`).
See docs/findings.md."""
