"""aiofarm frontend, official backend: ``daemon _serve`` goes to the official runtime."""
