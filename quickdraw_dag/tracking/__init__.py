"""MLflow: the store, the live parent run and its session, the final record, lineage, comparing runs."""
