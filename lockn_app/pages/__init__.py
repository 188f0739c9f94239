"""One module per page; each exposes a function that returns the page's component tree."""
