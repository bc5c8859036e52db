"""From features and a class to weights over the grid: the three scorers, their data-free heads, fitted heads."""
