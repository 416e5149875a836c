"""The cluster-matching corpus (hand-written run pairs with ground truth), its builder and its scorer: used by
tests/ (the matcher's floors) and by `./dev bench matching` (bench/matching/)."""
