//! Prints, as JSON, a synthetic training cohort (standardised rows and outcomes) and the
//! logistic regression, linear SVM and Gaussian naive Bayes that FedRad fits over four uneven
//! sites, so scikit-learn can refit them on the pooled rows:
//! `scripts/compare_sklearn_classifiers.py`.

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::classifiers::{self, Scorer, Totals};
use fedrad_shared::algorithms::testdata::{cohort, site_ranges, standardiser};
use fedrad_shared::algorithms::{block_on_ready, logistic, standardise};

fn main() {
    let (x, y, _) = cohort(21);
    let x: Vec<Vec<f64>> = x.iter().map(|r| r[..8].to_vec()).collect();
    let z = standardiser(&x).apply(&x).expect("finite");
    let y: Vec<bool> = y.iter().map(|v| *v == 1.0).collect();
    let width = z[0].len();
    let q = width + 1;
    let sites = site_ranges(&[73, 62, 53, 41]);
    let answers = |f: &dyn Fn(&std::ops::Range<usize>) -> fedrad_shared::proto::Aggregate| -> Vec<SiteAggregate> {
        sites.iter().enumerate().map(|(k, r)| SiteAggregate::new(format!("s{k}"), f(r))).collect()
    };
    let (lr, _, converged) = block_on_ready(classifiers::minimise(vec![0.0; q], async |beta: &[f64]| -> Result<Totals, String> {
        let model = logistic::ModelPoint { columns: (0..width).collect(), coefficients: beta.to_vec() };
        let a = answers(&|r| logistic::site_round(&z[r.clone()], &y[r.clone()], std::slice::from_ref(&model), 1, f64::INFINITY).expect("site round"));
        let t = logistic::combine(&a, std::slice::from_ref(&model)).map_err(|e| e.to_string())?.remove(0);
        Ok(classifiers::ridge_logistic_objective((t.1, t.2, t.3), beta, 1.0))
    }))
    .expect("logistic fit");
    assert!(converged);
    let (svm, _, converged) = block_on_ready(classifiers::minimise(vec![0.0; q], async |w: &[f64]| -> Result<Totals, String> {
        let a = answers(&|r| classifiers::site_squared_hinge(&z[r.clone()], &y[r.clone()], w, 1, f64::INFINITY).expect("site round"));
        Ok(classifiers::svm_objective(classifiers::combine_newton(&a, "loss", q).map_err(|e| e.to_string())?, w, 1.0))
    }))
    .expect("SVM fit");
    assert!(converged);
    let parts: Vec<(&[Vec<f64>], &[bool])> = sites.iter().map(|r| (&z[r.clone()], &y[r.clone()])).collect();
    let moments = standardise::federated(&parts, width, |answers| answers);
    let Scorer::NaiveBayes { log_prior, mean, variance } = classifiers::naive_bayes(&moments) else { unreachable!("naive_bayes returns a naive Bayes scorer") };
    println!(
        "{}",
        serde_json::json!({
            "z": z,
            "y": y,
            "logistic": { "intercept": lr[0], "coefficients": &lr[1..] },
            "linear_svm": { "intercept": svm[0], "coefficients": &svm[1..] },
            "naive_bayes": { "log_prior": log_prior, "mean": mean, "variance": variance },
        })
    );
}
