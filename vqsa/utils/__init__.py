"""Small shared helpers: atomic file writes, directory walks, torch.distributed wrappers, run metadata."""
