#!/usr/bin/env python3
"""Writes shared/tests/fixtures/combat_neurocombat.json: neuroCombat's own output on a fixed
multi-site data set, which `cargo test -p fedrad-shared combat` compares FedRad's pooled
reference and its federated ComBat with (to 1e-8). Python is not needed to run the tests;
this script only regenerates the fixture:

    python3 -m venv /tmp/nc && /tmp/nc/bin/pip install numpy pandas neuroCombat==0.2.12
    /tmp/nc/bin/python scripts/make_combat_fixture.py

The data: four sites of 23, 31, 17 and 29 training patients (plus 5 validation patients
each, harmonised with neuroCombatFromTraining), 30 features with site-specific location and
scale, an age effect and an outcome effect. Ages are whole years because neuroCombat casts
continuous covariates to float32.
"""
import json
import pathlib

import numpy as np
import pandas as pd
from neuroCombat import neuroCombat

rng = np.random.default_rng(20261205)
sizes = [23, 31, 17, 29]
validation_per_site = 5
p = 30


def draw(site, n):
    age = rng.integers(30, 76, size=n).astype(float)
    outcome = (rng.random(n) < 0.4).astype(int)
    base = 100.0 + 10.0 * np.arange(p)
    slope_age = np.linspace(-0.5, 0.5, p)
    slope_outcome = np.linspace(3.0, -2.0, p)
    site_shift = (site - 1.5) * np.linspace(5.0, 20.0, p)
    site_scale = 1.0 + 0.3 * site
    noise = rng.normal(size=(n, p)) * (2.0 + np.arange(p) % 5) * site_scale
    y = base + np.outer(age - 50.0, slope_age) + np.outer(outcome, slope_outcome) + site_shift + noise
    return y, age, outcome


train = [draw(s, n) for s, n in enumerate(sizes)]
valid = [draw(s, validation_per_site) for s in range(len(sizes))]
y = np.vstack([t[0] for t in train])
age = np.concatenate([t[1] for t in train])
outcome = np.concatenate([t[2] for t in train])
batch = np.concatenate([np.full(n, s) for s, n in enumerate(sizes)])
covars = pd.DataFrame({"site": [f"site{b}" for b in batch], "outcome": outcome, "age": age})



def from_training(dat, batch, estimates):
    """neuroCombatFromTraining's arithmetic, line for line (0.2.12's own function fails under
    numpy 2 at `int(np.where(...)[0])`): the covariate term of a new patient is the training
    mean of the covariate terms."""
    var_pooled = estimates["var.pooled"]
    stand_mean = estimates["stand.mean"][:, 0]
    mod_mean = estimates["mod.mean"]
    gamma_star = estimates["gamma.star"]
    delta_star = estimates["delta.star"]
    n_array = dat.shape[1]
    stand_mean = stand_mean + mod_mean.mean(axis=1)
    stand_mean = np.transpose([stand_mean] * n_array)
    bayesdata = np.subtract(dat, stand_mean) / np.sqrt(var_pooled)
    gamma = np.transpose(gamma_star[batch, :])
    delta = np.transpose(delta_star[batch, :])
    bayesdata = np.subtract(bayesdata, gamma) / np.sqrt(delta)
    bayesdata = bayesdata * np.sqrt(var_pooled) + stand_mean
    return {"data": bayesdata}


out = {
    "sizes": sizes,
    "features": y.tolist(),
    "age": age.tolist(),
    "outcome": outcome.tolist(),
    "validation": {
        "features": np.vstack([v[0] for v in valid]).tolist(),
        "site": np.concatenate([np.full(validation_per_site, s) for s in range(len(sizes))]).tolist(),
    },
    "runs": {},
}
for name, kwargs in {
    "parametric": dict(eb=True, parametric=True, mean_only=False),
    "non_parametric": dict(eb=True, parametric=False, mean_only=False),
    "parametric_mean_only": dict(eb=True, parametric=True, mean_only=True),
    "non_parametric_mean_only": dict(eb=True, parametric=False, mean_only=True),
    "no_eb": dict(eb=False, mean_only=False),
}.items():
    r = neuroCombat(dat=y.T.copy(), covars=covars.copy(), batch_col="site", categorical_cols=["outcome"], continuous_cols=["age"], **kwargs)
    est = r["estimates"]
    new = from_training(np.vstack([v[0] for v in valid]).T.copy(), out["validation"]["site"], est)
    out["runs"][name] = {
        "harmonised": r["data"].T.tolist(),
        "gamma_star": np.asarray(est["gamma.star"], dtype=float).tolist(),
        "delta_star": np.asarray(est["delta.star"], dtype=float).tolist(),
        "var_pooled": np.asarray(est["var.pooled"], dtype=float).ravel().tolist(),
        "validation_harmonised": np.asarray(new["data"]).T.tolist(),
    }

path = pathlib.Path(__file__).resolve().parent.parent / "shared" / "tests" / "fixtures" / "combat_neurocombat.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
print(f"wrote {path}")
