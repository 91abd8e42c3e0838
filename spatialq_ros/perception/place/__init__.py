"""Place recognition AnyLoc-style: value-facet patch descriptors -> VLAD -> PCA-whitening -> map search."""
