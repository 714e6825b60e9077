"""What runs inside Ray actors: decoding, face and action models, tracking."""
