"""The Bitrix24 event receiver (``rdb24 webhook``): operator replies in, tasks out. An entry point:
workers never import it (it pulls in FastAPI)."""
