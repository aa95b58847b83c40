"""Dead-letter queues: what is in one, why, and getting it out again."""
