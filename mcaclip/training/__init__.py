"""Train MCA-CLIP editors (the trainer arrives with the training issue)."""
