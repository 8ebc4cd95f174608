"""Multi-step flows: the incoming subscriber message chain and the operator reply."""
