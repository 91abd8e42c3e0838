"""The map database: places (pose, stamp, global descriptor) of earlier flights, in one versioned .npz.

The file holds a JSON header (format, version, backbone fingerprint, config: facet layer, aggregation,
size, PCA dims, ...) and arrays: vocabulary (K, D), poses (N, 7: x y z qx qy qz qw), stamps (N,) int64 ns,
aggregated (N, R) float32 global descriptors before PCA (VLAD: R = K * D; GeM: R = D), and the PCA
parameters when whitening is on. Keeping the pre-PCA descriptors lets a growing map refit its
whitening; the searched descriptors are derived from them. Files are written atomically; a descriptor
from another backbone or quantization is refused, since its space is not the map's.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ...atomic import save_npz_atomic
from ...errors import SpatialqError
from .pca import PCAWhitening
from .search import FAISS_FROM, PlaceIndex
from .vlad import l2n

FORMAT = "spatialq-place-map"
FORMAT_VERSION = 1
ARRAYS = ("vocabulary", "poses", "stamps", "aggregated")


class PlaceDatabase:
    def __init__(self, vocabulary: np.ndarray, fingerprint: str, config: dict, pca: PCAWhitening | None = None,
                 name: str = "map", faiss_from: int = FAISS_FROM) -> None:
        """An empty map; `add` places, or `load` a saved one. vocabulary (K, D): for GeM only D matters."""
        self.vocabulary = np.asarray(vocabulary, np.float32)
        self.fingerprint = str(fingerprint)
        self.config = dict(config)
        self.pca = pca
        self.name = name  # how errors refer to it: the file it came from
        self.faiss_from = faiss_from
        self._poses = np.zeros((0, 7))
        self._stamps = np.zeros(0, np.int64)
        self._aggregated = np.zeros((0, self.width), np.float32)
        self._pending: list[tuple[np.ndarray, np.ndarray, int]] = []  # added places, stacked on first read
        self._index: PlaceIndex | None = None

    @property
    def width(self) -> int:
        """R, the length of an aggregated descriptor this map's config and vocabulary produce."""
        k, d = self.vocabulary.shape
        return d if self.config.get("aggregation", "vlad") == "gem" else k * d

    @property
    def poses(self) -> np.ndarray:
        self._stack_pending()
        return self._poses

    @property
    def stamps(self) -> np.ndarray:
        self._stack_pending()
        return self._stamps

    @property
    def aggregated(self) -> np.ndarray:
        self._stack_pending()
        return self._aggregated

    def __len__(self) -> int:
        return len(self._stamps) + len(self._pending)

    def add(self, aggregated: np.ndarray, pose: np.ndarray, stamp_ns: int) -> None:
        """Append one place: its pre-PCA global descriptor (R,), pose (7,) and stamp. Searched from the next query."""
        row = np.asarray(aggregated, np.float32).reshape(-1)
        pose = np.asarray(pose, np.float64).reshape(-1)
        if row.shape != (self.width,):
            raise SpatialqError(f"{self.name}: a place descriptor must have {self.width} values, got {row.shape}")
        if pose.shape != (7,) or not np.all(np.isfinite(pose)) or not np.all(np.isfinite(row)):
            raise SpatialqError(f"{self.name}: a place needs a finite pose (x y z qx qy qz qw) and descriptor")
        self._pending.append((l2n(row), pose, int(stamp_ns)))
        self._index = None

    def refit_pca(self) -> None:
        """Fit the whitening on the map's own descriptors, with at most half as many directions as places:
        fewer places than directions would whiten sampling noise (all places would look equally far)."""
        dims = min(int(self.config.get("pca_dims", 0)), len(self) // 2)
        self.pca = PCAWhitening.fit(self.aggregated, dims) if dims >= 2 else None
        self._index = None

    def project(self, aggregated: np.ndarray) -> np.ndarray:
        """Pre-PCA (N, R) or (R,) -> the searched (N, d) unit descriptors."""
        x = np.atleast_2d(np.asarray(aggregated, np.float32))
        if x.shape[1] != self.width:
            raise SpatialqError(f"{self.name}: expects {self.width}-value place descriptors, got {x.shape[1]} "
                                "(another backbone layer or vocabulary?)")
        return self.pca.transform(x) if self.pca is not None else l2n(x)

    @property
    def descriptors(self) -> np.ndarray:
        """(N, d) float32 unit descriptors that queries are compared with."""
        return self._search_index().descriptors

    def require_backbone(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            raise SpatialqError(f"{self.name} was built with backbone {self.fingerprint!r}, but the frames come from "
                                f"{fingerprint!r}: rebuild the map with this model")

    def query(self, aggregated: np.ndarray, k: int, fingerprint: str) -> tuple[np.ndarray, np.ndarray]:
        """Top-k places (indices, cosine similarities), best first, for one (R,) or several (Q, R) pre-PCA
        descriptors; the frames' backbone must be the map's."""
        self.require_backbone(fingerprint)
        if len(self) == 0:
            raise SpatialqError(f"{self.name} has no places yet")
        queries = self.project(aggregated)
        indices, similarities = self._search_index().search(queries, k)
        if np.ndim(aggregated) == 1:
            return indices[0], similarities[0]
        return indices, similarities

    def _search_index(self) -> PlaceIndex:
        if self._index is None:
            self._index = PlaceIndex(self.project(self.aggregated), faiss_from=self.faiss_from)
        return self._index

    def _stack_pending(self) -> None:
        if self._pending:
            rows, poses, stamps = zip(*self._pending)
            self._aggregated = np.concatenate([self._aggregated, np.stack(rows)])
            self._poses = np.concatenate([self._poses, np.stack(poses)])
            self._stamps = np.concatenate([self._stamps, np.array(stamps, np.int64)])
            self._pending = []

    def save(self, path: str | Path) -> None:
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": self.fingerprint,
                  "config": self.config, "places": len(self)}
        arrays = {"header": np.array(json.dumps(header)), "vocabulary": self.vocabulary, "poses": self.poses,
                  "stamps": self.stamps, "aggregated": self.aggregated}
        if self.pca is not None:
            arrays["pca_mean"], arrays["pca_components"] = self.pca.mean, self.pca.components
        save_npz_atomic(path, **arrays)

    @classmethod
    def load(cls, path: str | Path, faiss_from: int = FAISS_FROM) -> PlaceDatabase:
        path = Path(path)
        if not path.is_file():
            raise SpatialqError(f"{path}: no such map file")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            header = json.loads(str(arrays.pop("header")))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise SpatialqError(f"{path}: not a readable map file ({type(exc).__name__})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise SpatialqError(f"{path}: not a spatialq map file")
        if header.get("format_version") != FORMAT_VERSION:
            raise SpatialqError(f"{path}: map format version {header.get('format_version')}, but this spatialq reads "
                                f"version {FORMAT_VERSION}: rebuild the map")
        missing = [key for key in ARRAYS if key not in arrays]
        if missing or not isinstance(header.get("fingerprint"), str) or not isinstance(header.get("config"), dict):
            raise SpatialqError(f"{path}: incomplete map file (missing {', '.join(missing) or 'header fields'})")
        if arrays["vocabulary"].ndim != 2:
            raise SpatialqError(f"{path}: corrupt map file (vocabulary of shape {arrays['vocabulary'].shape})")
        pca = None
        if "pca_mean" in arrays and "pca_components" in arrays:
            pca = PCAWhitening(arrays["pca_mean"].astype(np.float32), arrays["pca_components"].astype(np.float32))
        db = cls(arrays["vocabulary"], header["fingerprint"], header["config"], pca=pca, name=str(path),
                 faiss_from=faiss_from)
        n = len(arrays["stamps"])
        shapes_fit = (arrays["poses"].shape == (n, 7) and arrays["stamps"].ndim == 1
                      and arrays["aggregated"].shape == (n, db.width) and header.get("places") == n
                      and (pca is None or pca.components.shape[1:] == (db.width,) == pca.mean.shape))
        if not shapes_fit:
            raise SpatialqError(f"{path}: corrupt map file (array shapes disagree with each other and the header)")
        db._poses = arrays["poses"].astype(np.float64)
        db._stamps = arrays["stamps"].astype(np.int64)
        db._aggregated = arrays["aggregated"].astype(np.float32)
        return db
