"""Storage: the DuckDB workspace, safe files (atomic writes, safetensors and JSON), pseudonyms, run folders."""
