#!/usr/bin/env python3
"""Checks FedRad's federated LASSO against scikit-learn on the pooled standardised data.

Runs `cargo run --example lasso_reference_case` (a synthetic 229-patient cohort, federated over
four uneven sites) and refits each (family, λ) with scikit-learn:

* gaussian: FedRad minimises (1/2N)‖y − b₀ − Zβ‖² + λ‖β‖₁, which is `Lasso(alpha=λ)`;
* binomial: FedRad minimises (1/N)Σ log-loss + λ‖β‖₁ (intercept unpenalised), which is
  `LogisticRegression(penalty="l1", C=1/(Nλ), solver="saga")` after multiplying by 1/(Nλ).

Coefficients must agree to 1e-4. Needs `pip install scikit-learn`.
"""
import json
import subprocess
import sys

import numpy as np
import sklearn
from sklearn.linear_model import Lasso, LogisticRegression

out = subprocess.run(
    ["cargo", "run", "--quiet", "--locked", "--release", "-p", "fedrad-shared", "--example", "lasso_reference_case"],
    check=True, capture_output=True, text=True,
).stdout
case = json.loads(out)
z, y = np.array(case["z"]), np.array(case["y"])
n = len(y)
worst = 0.0
for fit in case["fits"]:
    lam = fit["lambda"]
    if fit["family"] == "gaussian":
        m = Lasso(alpha=lam, tol=1e-12, max_iter=1_000_000).fit(z, y)
        b0, beta = m.intercept_, m.coef_
    else:
        # scikit-learn 1.8 spells the L1 penalty l1_ratio=1 and deprecates penalty="l1".
        l1 = {"l1_ratio": 1.0} if tuple(map(int, sklearn.__version__.split(".")[:2])) >= (1, 8) else {"penalty": "l1"}
        m = LogisticRegression(**l1, C=1.0 / (n * lam), solver="saga", tol=1e-12, max_iter=1_000_000).fit(z, y)
        b0, beta = m.intercept_[0], m.coef_[0]
    diff = max(abs(b0 - fit["intercept"]), np.max(np.abs(beta - np.array(fit["coefficients"]))))
    worst = max(worst, diff)
    nz = int(np.sum(np.array(fit["coefficients"]) != 0))
    print(f"{fit['family']:8s} λ={lam:.5f}  non-zero {nz:2d}  max |Δ| = {diff:.2e}")
print(f"worst difference {worst:.2e} (tolerance 1e-4)")
sys.exit(0 if worst < 1e-4 else 1)
