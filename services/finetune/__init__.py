"""LoRA fine-tuning of the served GGUF on CPU with JAX: dataset version in, reviewed registry version out."""
