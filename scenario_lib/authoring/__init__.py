"""The offline author: real scenario scripts written from family templates, without an LLM or network."""
