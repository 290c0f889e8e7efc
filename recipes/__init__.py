"""seqkit.recipes: one small Python file per training recipe."""
