"""Ingestion: source files are sniffed, read, mapped, validated and stored, with every row accounted for."""
