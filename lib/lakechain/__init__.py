"""Lakechain: LLM reasoning over whole tables with Spark, Delta, FAISS and LangChain."""

__version__ = "0.1.0"
