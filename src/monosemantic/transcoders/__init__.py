"""`transcoders`: a transcoder set, one per-layer transcoder (hook_mlp_in -> hook_mlp_out) for
each chosen layer, trained as ordinary runs and usable together as a replacement model."""
