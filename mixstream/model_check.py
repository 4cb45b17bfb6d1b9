"""Value checks of a model file's arrays: what a structurally sound file must also satisfy.

``mixstream.io`` already refuses a file whose structure is wrong (not a zip archive, missing
members, shapes or dtypes that disagree with the metadata, pickled arrays). A file can pass all
of that and still hold values no fit produces: a NaN mean, weights off the simplex, a covariance
that is not positive definite, or metadata that names another covariance type than the arrays
hold. Loaded silently, such a model gives NaN probabilities or absurd scores; this module finds
the first such problem so that the reader can refuse the file, naming the array.

The checks know the arrays by the names the models write (``Model.get_state``): ``alloc/...``
(``weights`` / ``theta`` of the finite allocation, ``sticks`` / ``eta1`` / ``eta0`` of the DP)
and ``obs/...`` of each likelihood, possibly under a prefix (a checkpoint holds ``model/`` and
``best/``). Arrays of other names are only checked to be finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: how far a probability vector's sum may be from 1
SIMPLEX_TOL = 1e-6


class ValueProblem(Exception):
    """An array (``member``) whose values are not valid (``what``)."""

    def __init__(self, member: str, what: str) -> None:
        super().__init__(f"array {member!r} {what}")
        self.member = member
        self.what = what


def check_model_values(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Raise ValueProblem for the first invalid array of a model file or checkpoint.

    ``meta`` is the file's metadata: a saved model's ``params`` or a checkpoint's
    ``fingerprint`` (``"param <name>"`` keys) give the options the arrays must agree with.
    """
    for name, arr in arrays.items():
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ValueProblem(name, f"holds {bad} non-finite value(s) (NaN or infinity)")
    params = _params_of(meta)
    for prefix in _model_prefixes(arrays):
        _check_model(prefix, {k[len(prefix) :]: v for k, v in arrays.items()}, params)


def _params_of(meta: dict[str, Any]) -> dict[str, Any]:
    params = meta.get("params")
    if isinstance(params, dict):
        return params
    fingerprint = meta.get("fingerprint")
    if isinstance(fingerprint, dict):
        return {k[6:]: v for k, v in fingerprint.items() if str(k).startswith("param ")}
    return {}


def _model_prefixes(arrays: dict[str, np.ndarray]) -> list[str]:
    """The prefixes ("" or "model/", "best/") under which a model's arrays are stored."""
    found = set()
    for name in arrays:
        for part in ("alloc/", "obs/"):
            i = name.find(part)
            if i >= 0 and (i == 0 or name[i - 1] == "/"):
                found.add(name[:i])
    return sorted(found)


class _Arrays:
    """One model's arrays, names relative to its prefix; errors name the full member."""

    def __init__(self, prefix: str, arrays: dict[str, np.ndarray]) -> None:
        self.prefix = prefix
        self.arrays = arrays

    def member(self, name: str) -> str:
        return self.prefix + name

    def get(self, name: str) -> np.ndarray | None:
        a = self.arrays.get(name)
        return None if a is None else np.asarray(a)

    def nonempty(self, name: str) -> np.ndarray | None:
        a = self.get(name)
        return None if a is None or a.size == 0 else a

    def bad(self, name: str, what: str) -> ValueProblem:
        return ValueProblem(self.member(name), what)

    def scalar(self, name: str) -> Any:
        a = self.get(name)
        if a is None or a.size != 1:
            raise self.bad(name, "is missing or not a single value")
        return a.reshape(-1)[0]

    def positive(self, name: str, strict: bool = True) -> np.ndarray | None:
        a = self.nonempty(name)
        if a is None:
            return None
        if a.dtype.kind not in "fiu":
            raise self.bad(name, f"has non-numeric dtype {a.dtype.str}")
        ok = a > 0 if strict else a >= 0
        if not ok.all():
            i = np.unravel_index(int(np.argmin(ok)), a.shape)
            sign = "> 0" if strict else ">= 0"
            raise self.bad(name, f"must be {sign} but holds {a[i]!r} at index {tuple(map(int, i))}")
        return a

    def unit_interval(self, name: str) -> np.ndarray | None:
        a = self.nonempty(name)
        if a is not None and not ((a >= 0) & (a <= 1)).all():
            raise self.bad(name, f"must lie in [0, 1] but ranges over [{a.min()!r}, {a.max()!r}]")
        return a

    def simplex(self, name: str) -> np.ndarray | None:
        """Rows (last axis) that are probability vectors: >= 0, summing to 1."""
        a = self.nonempty(name)
        if a is None:
            return None
        if (a < 0).any() or (a > 1 + SIMPLEX_TOL).any():
            raise self.bad(
                name,
                f"holds probabilities outside [0, 1] ({np.round(a, 6).tolist()}): weights "
                "must lie on the simplex",
            )
        sums = a.sum(axis=-1)
        if not np.allclose(sums, 1.0, rtol=0, atol=SIMPLEX_TOL):
            raise self.bad(
                name,
                f"sums to {np.round(sums, 9).tolist()}, not 1: weights must lie on the simplex",
            )
        return a

    def positive_definite(
        self, name: str, structure: str, what: str = "covariance", single: bool = False
    ) -> None:
        """A stack (G, D, D) / (G, D) / (G,) of full / diagonal / spherical matrices (one
        matrix, not a stack, when ``single``); each full one must have a Cholesky factor."""
        a = self.nonempty(name)
        if a is None:
            return
        if single:
            a = a[None]
        if structure == "full":
            for g in range(a.shape[0]):
                try:
                    np.linalg.cholesky(a[g])
                except np.linalg.LinAlgError:
                    raise self.bad(
                        name, f"is not positive definite: {what} {g} has no Cholesky factor"
                    ) from None
                if not np.allclose(a[g], a[g].T, rtol=1e-8, atol=1e-12 * np.abs(a[g]).max()):
                    raise self.bad(name, f"is not symmetric ({what} {g})")
        else:
            flat = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
            bad = np.flatnonzero(~(flat > 0).all(axis=1))
            if bad.size:
                raise self.bad(
                    name,
                    f"is not positive definite: {what} {int(bad[0])} has a variance <= 0",
                )


def _check_model(prefix: str, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> None:
    m = _Arrays(prefix, arrays)
    K_alloc = _check_alloc(m, params)
    if "obs/latent_dim" in arrays:
        K_obs = _check_hmog(m)
        likelihood = "hmog"
    elif "obs/covariance_type" in arrays:
        K_obs = _check_gauss(m, params)
        likelihood = "gauss"
    elif "obs/B" in arrays or "obs/prior_cov" in arrays:
        K_obs = _check_zero_mean_gauss(m)
        likelihood = "zero_mean_gauss"
    elif "obs/lam1" in arrays:
        K_obs = _check_bernoulli(m)
        likelihood = "bernoulli"
    elif "obs/conc" in arrays or "obs/phi" in arrays:
        K_obs = _check_multinomial(m)
        likelihood = "multinomial"
    else:
        K_obs, likelihood = None, None
    said = params.get("likelihood")
    if likelihood is not None and said is not None and said != likelihood:
        raise ValueProblem(
            prefix + "obs",
            f"holds the parameters of a {likelihood!r} likelihood, but the metadata says "
            f"likelihood={said!r}",
        )
    if K_alloc is not None and K_obs is not None and K_alloc != K_obs:
        raise ValueProblem(
            prefix + "alloc",
            f"describes {K_alloc} components but the observation model's arrays hold {K_obs}",
        )


def _check_alloc(m: _Arrays, params: dict[str, Any]) -> int | None:
    """Finite (theta, weights) or DP (eta1, eta0, sticks) parameters; returns K."""
    if "alloc/theta" in m.arrays or "alloc/weights" in m.arrays:
        kind = "finite"
        m.positive("alloc/theta")
        m.simplex("alloc/weights")
        sizes = [m.get(n).size for n in ("alloc/theta", "alloc/weights") if m.get(n) is not None]
    elif any(f"alloc/{n}" in m.arrays for n in ("eta1", "eta0", "sticks")):
        kind = "dp"
        m.positive("alloc/eta1")
        m.positive("alloc/eta0")
        m.unit_interval("alloc/sticks")
        eta1, eta0 = m.get("alloc/eta1"), m.get("alloc/eta0")
        if eta1 is not None and eta0 is not None and eta1.shape != eta0.shape:
            raise m.bad("alloc/eta0", f"has shape {eta0.shape}, but eta1 has {eta1.shape}")
        sizes = [m.get(f"alloc/{n}").size for n in ("eta1", "sticks") if f"alloc/{n}" in m.arrays]
    else:
        return None
    said = params.get("allocation")
    if said is not None and said != kind:
        raise ValueProblem(
            m.prefix + "alloc",
            f"holds the parameters of a {kind!r} allocation, but the metadata says "
            f"allocation={said!r}",
        )
    return max(sizes) if sizes else None


def _structure_of(ctype: str) -> tuple[str, bool]:
    """("full" | "diag" | "spherical", tied) of a canonical covariance type name."""
    tied = ctype.startswith("tied_")
    return (ctype[5:] if tied else ctype), tied


def _rep_shape(structure: str, D: int) -> tuple[int, ...]:
    return {"full": (D, D), "diag": (D,), "spherical": ()}[structure]


def _check_gauss(m: _Arrays, params: dict[str, Any]) -> int:
    from mixstream.vocabulary import COVARIANCE_ALIASES, COVARIANCE_TYPES

    ctype = str(m.scalar("obs/covariance_type"))
    if ctype not in COVARIANCE_TYPES:
        raise m.bad("obs/covariance_type", f"names an unknown covariance type {ctype!r}")
    said = params.get("covariance_type")
    if said is not None and COVARIANCE_ALIASES.get(said, said) != ctype:
        raise m.bad(
            "obs/covariance_type",
            f"says the model has {ctype!r} covariances, but the metadata says "
            f"covariance_type={said!r}",
        )
    structure, tied = _structure_of(ctype)
    D = int(m.scalar("obs/n_features"))
    K = int(m.scalar("obs/K"))
    G = 1 if tied else K
    if D < 1 or K < 0:
        raise m.bad("obs/K", f"gives K={K} components of D={D} features")
    want = (G, *_rep_shape(structure, D))
    for name in ("obs/cov", "obs/psi"):
        a = m.nonempty(name)
        if a is not None and a.shape != want:
            raise m.bad(
                name,
                f"has shape {a.shape}, but {ctype!r} covariances of K={K} components and "
                f"D={D} features have shape {want}",
            )
        m.positive_definite(name, structure)
    mean = m.nonempty("obs/m")
    if mean is not None and mean.size != K * D:
        raise m.bad("obs/m", f"has {mean.size} values, not K*D = {K}*{D}")
    for name, n in (("obs/kappa", K), ("obs/nu", G)):
        a = m.positive(name)
        if a is not None and a.size != n:
            raise m.bad(name, f"has {a.size} values, expected {n}")
    if "obs/has_prior" in m.arrays and bool(m.scalar("obs/has_prior")):
        prior = m.get("obs/covariance_prior")
        if prior is not None and prior.size:
            if prior.shape != _rep_shape(structure, D):
                raise m.bad(
                    "obs/covariance_prior",
                    f"has shape {prior.shape}, not {_rep_shape(structure, D)} of a {ctype!r} "
                    "covariance",
                )
            m.positive_definite("obs/covariance_prior", structure, "prior covariance", True)
        m.positive("obs/mean_precision_prior")
        m.positive("obs/degrees_of_freedom_prior")
    m.positive("obs/reg_covar", strict=False)
    return K


def _check_zero_mean_gauss(m: _Arrays) -> int | None:
    D = int(m.scalar("obs/n_features"))
    Ks = []
    for name in ("obs/B", "obs/cov"):
        a = m.nonempty(name)
        if a is None:
            continue
        if a.ndim != 3 or a.shape[1:] != (D, D):
            raise m.bad(name, f"has shape {a.shape}, not (K, {D}, {D})")
        m.positive_definite(name, "full")
        Ks.append(a.shape[0])
    if m.nonempty("obs/prior_cov") is not None:
        m.positive_definite("obs/prior_cov", "full", "prior covariance", True)
    m.positive("obs/nu0")
    nu = m.positive("obs/nu")
    if nu is not None:
        Ks.append(nu.size)
    m.positive("obs/reg_covar", strict=False)
    return _one_k(m, Ks, "obs/nu")


def _check_bernoulli(m: _Arrays) -> int | None:
    m.positive("obs/lam1")
    m.positive("obs/lam0")
    a, b = m.positive("obs/a"), m.positive("obs/b")
    p = m.unit_interval("obs/p")
    Ks = [x.shape[0] for x in (a, b, p) if x is not None and x.ndim]
    return _one_k(m, Ks, "obs/p")


def _check_multinomial(m: _Arrays) -> int | None:
    m.positive("obs/lam")
    conc = m.positive("obs/conc")
    phi = m.simplex("obs/phi")
    Ks = [x.shape[0] for x in (conc, phi) if x is not None and x.ndim]
    return _one_k(m, Ks, "obs/conc")


class _LatentArrays(_Arrays):
    """An HMoG's latent Gaussian components, checked as a Gaussian's "obs/..." arrays and
    named by their members "obs/latent/..."."""

    def member(self, name: str) -> str:
        return self.prefix + name.replace("obs/", "obs/latent/", 1)


def _check_hmog(m: _Arrays) -> int | None:
    """The HMoG's layer (W, mu, Psi on its structure) and its latent Gaussian components."""
    p, d = int(m.scalar("obs/n_features")), int(m.scalar("obs/latent_dim"))
    structure = str(m.scalar("obs/covariance_type"))
    if structure not in ("spherical", "diag", "full"):
        raise m.bad("obs/covariance_type", f"names no HMoG noise structure: {structure!r}")
    W = m.get("obs/W")
    if W is None or (p and W.shape != (p, d)):
        raise m.bad("obs/W", f"has shape {None if W is None else W.shape}, not ({p}, {d})")
    if p:
        m.positive_definite("obs/psi", structure, "noise covariance", True)
    sub = _LatentArrays(
        m.prefix,
        {
            "obs/" + k[len("obs/latent/") :]: v
            for k, v in m.arrays.items()
            if k.startswith("obs/latent/")
        },
    )
    return _check_gauss(sub, {"covariance_type": "full"})


def _one_k(m: _Arrays, Ks: list[int], name: str) -> int | None:
    if len(set(Ks)) > 1:
        raise m.bad(name, f"disagrees with the other arrays on the number of components ({Ks})")
    return Ks[0] if Ks else None
