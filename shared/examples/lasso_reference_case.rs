//! Prints, as JSON, a synthetic training cohort (standardised rows and outcomes) and the
//! federated LASSO coefficients (4 uneven sites) at several λ for both families, so an
//! external solver can refit the same objective: `scripts/compare_sklearn_lasso.py`.

use fedrad_shared::algorithms::glm::GlmFamily;
use fedrad_shared::algorithms::lasso::LassoSettings;
use fedrad_shared::algorithms::testdata::{cohort, federated, standardiser};

fn main() {
    let (x, y, fold) = cohort(7);
    let z = standardiser(&x).apply(&x).expect("finite");
    let mut fits = Vec::new();
    for family in [GlmFamily::Gaussian, GlmFamily::Binomial] {
        let settings = LassoSettings { family, ..Default::default() };
        let path = federated(&x, &y, &fold, &[73, 62, 53, 41], &settings, 0).expect("federated run");
        for l in [10, 30, 50, 70, 90] {
            fits.push(serde_json::json!({
                "family": family,
                "lambda": path.lambdas[l],
                "intercept": path.intercepts[l],
                "coefficients": path.coefficients[l],
            }));
        }
    }
    println!("{}", serde_json::json!({ "z": z, "y": y, "fits": fits }));
}
