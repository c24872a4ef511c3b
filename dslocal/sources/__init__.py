"""Where model bytes come from (Hugging Face, mirrors, ModelScope, local folders) and the resumable, verified downloader."""
