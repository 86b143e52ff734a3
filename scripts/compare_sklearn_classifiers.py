#!/usr/bin/env python3
"""Checks FedRad's federated classifiers against scikit-learn on the pooled standardised data.

Runs `cargo run --example classifier_reference_case` (a synthetic 229-patient cohort, fitted
over four uneven sites) and refits on the pooled rows:

* `LogisticRegression(C=1)` — FedRad maximises l(b) - |w|^2/2C with the intercept free;
* `LinearSVC(C=1, loss="squared_hinge")` — liblinear's primal problem, whose intercept is
  penalised as a feature of value 1 (intercept_scaling=1), as FedRad's;
* `GaussianNB()` — priors, class means and variances (+ 1e-9 x the largest variance).

Needs `pip install scikit-learn`. Prints the largest difference per classifier; exits 1 if any
exceeds 1e-6.
"""
import json
import subprocess
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import LinearSVC

out = subprocess.run(
    ["cargo", "run", "--quiet", "--locked", "-p", "fedrad-shared", "--example", "classifier_reference_case"],
    check=True, capture_output=True, text=True,
).stdout
case = json.loads(out)
z, y = np.array(case["z"]), np.array(case["y"], dtype=int)

lr = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(z, y)
svm = LinearSVC(C=1.0, loss="squared_hinge", dual=False, tol=1e-12, max_iter=1_000_000).fit(z, y)
nb = GaussianNB().fit(z, y)

def diff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))

results = {
    "logistic regression": max(diff(lr.intercept_, [case["logistic"]["intercept"]]), diff(lr.coef_[0], case["logistic"]["coefficients"])),
    "linear SVM": max(diff(svm.intercept_, [case["linear_svm"]["intercept"]]), diff(svm.coef_[0], case["linear_svm"]["coefficients"])),
    "naive Bayes": max(
        diff(np.log(nb.class_prior_), case["naive_bayes"]["log_prior"]),
        diff(nb.theta_, case["naive_bayes"]["mean"]),
        diff(nb.var_, case["naive_bayes"]["variance"]),
    ),
}
for name, d in results.items():
    print(f"{name}: largest difference from scikit-learn {d:.2e}")
sys.exit(0 if max(results.values()) < 1e-6 else 1)
