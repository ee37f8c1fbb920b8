"""Click data: readers of the public formats, `jump prepare`, prepared datasets, the synthetic generator."""
