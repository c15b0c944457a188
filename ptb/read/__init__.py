"""Reading it back: a volume's history, its timeline, one item in full, diffs, checks, lineage and exports."""
