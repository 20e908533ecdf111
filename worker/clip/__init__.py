"""OpenAI CLIP's tokenizer vocabulary, shipped so that no model needs a download to tokenize."""
