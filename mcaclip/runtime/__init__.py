"""Edit latents with an engine bundle and benchmark backends."""
