"""Engine adapters: one interface, several back ends (llama.cpp in-process, any OpenAI-compatible server)."""
