"""Customer value: the BG/NBD and Gamma-Gamma model, CLV, lifecycle stage and the source's value measures."""
