"""``sparktrainer worker``: a GPU node of a distributed deployment."""
