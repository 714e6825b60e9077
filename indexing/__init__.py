"""The output side: schemas, Parquet writers, FAISS, identities, queries."""
