"""Base models: the built-in tiny Llama and its tokenizer, local Hugging Face directories, the registry."""
