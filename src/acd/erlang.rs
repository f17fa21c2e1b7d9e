//! Queueing theory for staffing and for checking the simulator.
//!
//! * [`ErlangC`]: the M/M/c queue. Poisson arrivals at rate λ, exponential
//!   handle times of mean 1/μ, `c` agents, callers who wait forever.
//!   Offered load A = λ/μ (Erlangs); the probability of waiting
//!   P(W>0) = C(c, A) is computed from the Erlang B recursion
//!   B(0) = 1, B(k) = A·B(k-1) / (k + A·B(k-1)) and
//!   C = c·B / (c - A·(1 - B)), which never forms A^c or c! and so stays
//!   exact to rounding for thousands of agents. Then
//!   ASA = E\[W\] = C / (cμ - λ), service level P(W ≤ t) = 1 - C·e^{-(cμ-λ)t},
//!   occupancy A / c.
//! * [`ErlangA`]: the M/M/c+M queue (Palm's model): the same, plus callers
//!   whose patience is exponential with mean 1/θ; a caller still waiting
//!   when patience runs out hangs up. See [`ErlangA`] for the derivation.
//!
//! Rates are per second and times in seconds. No I/O, no clock.

/// Erlang B: the probability that all `agents` are busy in an M/M/c/c loss
/// system with offered load `load` Erlangs (equivalently, the weight of
/// state c among states 0..=c of the M/M/c queue). Stable recursion.
pub fn erlang_b(agents: u32, load: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=agents {
        let ab = load * b;
        b = ab / (f64::from(k) + ab);
    }
    b
}

/// An M/M/c queue in steady state. Rates per second, times in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErlangC {
    /// λ: calls per second.
    pub arrival_rate: f64,
    /// 1/μ: mean handle time in seconds.
    pub mean_handle_secs: f64,
    /// c: agents.
    pub agents: u32,
}

impl ErlangC {
    pub fn new(arrival_rate: f64, mean_handle_secs: f64, agents: u32) -> Self {
        Self {
            arrival_rate,
            mean_handle_secs,
            agents,
        }
    }

    /// λ from calls per hour.
    pub fn per_hour(calls_per_hour: f64, mean_handle_secs: f64, agents: u32) -> Self {
        Self::new(calls_per_hour / 3600.0, mean_handle_secs, agents)
    }

    fn service_rate(&self) -> f64 {
        1.0 / self.mean_handle_secs
    }

    /// A = λ/μ in Erlangs.
    pub fn offered_load(&self) -> f64 {
        self.arrival_rate * self.mean_handle_secs
    }

    /// A < c: the queue has a steady state. Otherwise it grows without
    /// bound, every caller waits and the waits are infinite.
    pub fn is_stable(&self) -> bool {
        self.offered_load() < f64::from(self.agents)
    }

    /// P(W > 0): the probability that a caller finds every agent busy.
    pub fn p_wait(&self) -> f64 {
        if !self.is_stable() {
            return 1.0;
        }
        let a = self.offered_load();
        let c = f64::from(self.agents);
        let b = erlang_b(self.agents, a);
        c * b / (c - a * (1.0 - b))
    }

    /// cμ - λ: the rate at which the wait of a waiting caller decays.
    fn drain_rate(&self) -> f64 {
        f64::from(self.agents) * self.service_rate() - self.arrival_rate
    }

    /// Average speed of answer E\[W\] over all callers, in seconds
    /// (infinite when unstable).
    pub fn asa(&self) -> f64 {
        if !self.is_stable() {
            return f64::INFINITY;
        }
        self.p_wait() / self.drain_rate()
    }

    /// E[W | W > 0] = 1/(cμ - λ), in seconds.
    pub fn mean_wait_of_waiting(&self) -> f64 {
        if !self.is_stable() {
            return f64::INFINITY;
        }
        1.0 / self.drain_rate()
    }

    /// Service level P(W ≤ t), `t` in seconds.
    pub fn service_level(&self, t: f64) -> f64 {
        if !self.is_stable() {
            return 0.0;
        }
        1.0 - self.p_wait() * (-self.drain_rate() * t.max(0.0)).exp()
    }

    /// Fraction of agent time spent handling calls: A/c (1 when unstable).
    pub fn occupancy(&self) -> f64 {
        (self.offered_load() / f64::from(self.agents)).min(1.0)
    }

    /// Mean number of callers waiting, Lq = λ·E\[W\].
    pub fn mean_queue_length(&self) -> f64 {
        self.arrival_rate * self.asa()
    }

    /// The fewest agents (at least `min_agents`, at most `max_agents`) for
    /// which P(W ≤ t) reaches `target`, or `None` if none does.
    pub fn agents_for_service_level(
        arrival_rate: f64,
        mean_handle_secs: f64,
        t: f64,
        target: f64,
        max_agents: u32,
    ) -> Option<u32> {
        let load = arrival_rate * mean_handle_secs;
        // Below A agents the queue is unstable; start at the first stable count.
        let first = (load.floor() as u32).saturating_add(1).max(1);
        (first..=max_agents)
            .find(|&c| Self::new(arrival_rate, mean_handle_secs, c).service_level(t) >= target)
    }
}

/// An M/M/c+M queue (Erlang A) in steady state: exponential patience with
/// mean 1/θ, FIFO. Rates per second, times in seconds.
///
/// Derivation. The number in system n is a birth-death process with birth
/// rate λ and death rate nμ for n ≤ c, cμ + (n-c)θ above. Its stationary
/// weights relative to state c are A^n c!/(n! A^c) below c, whose sum over
/// n < c is 1/B(c, A) - 1 (Erlang B again, so stable), and
/// ∏_{i=1..k} λ/(cμ + iθ) for n = c + k. By PASTA an arrival finds n with
/// these probabilities. A caller who finds k others waiting reaches an
/// agent after V = Σ_{j=0..k} Exp(cμ + jθ) (service completions or
/// abandonments of those ahead) unless its own patience τ ~ Exp(θ) runs out
/// first, so
/// * P(answered | k) = E[e^{-θV}] = ∏ (cμ+jθ)/(cμ+(j+1)θ) = cμ/(cμ+(k+1)θ),
/// * E[W·1{answered} | k] = E[V e^{-θV}] = P(answered | k)·Σ_{j=0..k} 1/(cμ+(j+1)θ),
/// * E[min(V, τ) | k] = (1 - E[e^{-θV}])/θ = (k+1)/(cμ+(k+1)θ),
/// * P(answered within t | k) = E[e^{-θV} 1{V ≤ t}], computed by
///   uniformization of the caller's own chain (advance at rate cμ + jθ,
///   killed at rate θ), which sums only positive terms.
///
/// The sums over k are cut where the weights fall below 1e-17 of the total.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErlangA {
    /// λ: calls per second.
    pub arrival_rate: f64,
    /// 1/μ: mean handle time in seconds.
    pub mean_handle_secs: f64,
    /// 1/θ: mean patience in seconds.
    pub mean_patience_secs: f64,
    /// c: agents.
    pub agents: u32,
}

/// The steady-state measures of an [`ErlangA`] queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErlangAMetrics {
    /// P(an arriving caller finds every agent busy).
    pub p_wait: f64,
    /// P(a caller hangs up before being answered).
    pub p_abandon: f64,
    /// ASA: mean wait of answered callers (0 for those answered at once).
    pub asa: f64,
    /// Mean time in queue over every caller, answered or not (= Lq/λ).
    pub mean_wait_all: f64,
    /// Mean number waiting, Lq.
    pub mean_queue_length: f64,
    /// Fraction of agent time busy: λ(1 - P(abandon))/(cμ).
    pub occupancy: f64,
}

/// Weights below this fraction of the total are dropped from the sums.
const TAIL: f64 = 1e-17;
/// The longest queue the Erlang A sums look at (a bound on memory and time
/// for absurd inputs, e.g. a tiny θ with λ far above cμ).
const MAX_QUEUE: usize = 1_000_000;

impl ErlangA {
    pub fn new(
        arrival_rate: f64,
        mean_handle_secs: f64,
        mean_patience_secs: f64,
        agents: u32,
    ) -> Self {
        Self {
            arrival_rate,
            mean_handle_secs,
            mean_patience_secs,
            agents,
        }
    }

    pub fn offered_load(&self) -> f64 {
        self.arrival_rate * self.mean_handle_secs
    }

    fn cmu(&self) -> f64 {
        f64::from(self.agents) / self.mean_handle_secs
    }

    fn theta(&self) -> f64 {
        1.0 / self.mean_patience_secs
    }

    /// What an arriving caller finds: P(some agent is free), and
    /// P(every agent busy and k callers already waiting) for k = 0, 1, ...
    fn arrival_distribution(&self) -> (f64, Vec<f64>) {
        let b = erlang_b(self.agents, self.offered_load());
        let below = 1.0 / b - 1.0;
        let (cmu, theta, lambda) = (self.cmu(), self.theta(), self.arrival_rate);
        let mut weights = vec![1.0];
        let mut term = 1.0;
        let mut sum = 1.0;
        for k in 1..MAX_QUEUE {
            let rate = cmu + k as f64 * theta;
            term *= lambda / rate;
            sum += term;
            weights.push(term);
            if rate > lambda && term < TAIL * sum {
                break;
            }
        }
        let total = below + sum;
        weights.iter_mut().for_each(|w| *w /= total);
        (below / total, weights)
    }

    pub fn metrics(&self) -> ErlangAMetrics {
        let (free, waiting) = self.arrival_distribution();
        let (cmu, theta) = (self.cmu(), self.theta());
        let mut p_answered_late = 0.0;
        let mut wait_answered = 0.0;
        let mut wait_all = 0.0;
        let mut inv_sum = 0.0;
        for (k, &p) in waiting.iter().enumerate() {
            let ahead = (k + 1) as f64;
            let answered = cmu / (cmu + ahead * theta);
            inv_sum += 1.0 / (cmu + ahead * theta);
            p_answered_late += p * answered;
            wait_answered += p * answered * inv_sum;
            wait_all += p * ahead / (cmu + ahead * theta);
        }
        let p_wait: f64 = waiting.iter().sum();
        let p_abandon = p_wait - p_answered_late;
        let answered = free + p_answered_late;
        ErlangAMetrics {
            p_wait,
            p_abandon,
            asa: wait_answered / answered,
            mean_wait_all: wait_all,
            mean_queue_length: self.arrival_rate * wait_all,
            occupancy: self.offered_load() * (1.0 - p_abandon) / f64::from(self.agents),
        }
    }

    /// P(answered with a wait ≤ t) over every offered caller (an abandoned
    /// call counts against the service level), `t` in seconds.
    pub fn service_level(&self, t: f64) -> f64 {
        let (free, waiting) = self.arrival_distribution();
        if t <= 0.0 {
            return free;
        }
        let within = answered_within(self.cmu(), self.theta(), waiting.len(), t);
        free + waiting.iter().zip(&within).map(|(p, g)| p * g).sum::<f64>()
    }
}

/// For k = 0..n callers ahead: P(answered within t) = E[e^{-θV} 1{V ≤ t}],
/// V = Σ_{j=0..k} Exp(cμ + jθ), by uniformization at rate
/// Λ = cμ + (n+1)θ: from "j ahead" the caller advances with probability
/// (cμ + jθ)/Λ per step, hangs up with θ/Λ, else stays; f_m(j) is the
/// probability of being answered within m steps and the answer is
/// Σ_m Poisson(Λt)(m)·f_m(j).
fn answered_within(cmu: f64, theta: f64, n: usize, t: f64) -> Vec<f64> {
    let big = cmu + (n as f64 + 1.0) * theta;
    let x = big * t;
    let mut f = vec![0.0; n];
    let mut acc = vec![0.0; n];
    let mut log_w = -x;
    let ln_x = x.ln();
    let mut m = 0u64;
    loop {
        let w = log_w.exp();
        if w > 0.0 {
            acc.iter_mut().zip(&f).for_each(|(a, f)| *a += w * f);
        }
        // f_{m+1}(j) from f_m(j-1) and f_m(j): descending j reads the old f(j-1).
        for j in (0..n).rev() {
            let before = if j == 0 { 1.0 } else { f[j - 1] };
            let advance = (cmu + j as f64 * theta) / big;
            f[j] = advance * before + (1.0 - advance - theta / big) * f[j];
        }
        m += 1;
        log_w += ln_x - (m as f64).ln();
        if m as f64 > x && log_w < -41.0 {
            break;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, rel: f64) {
        assert!(
            (actual - expected).abs() <= rel * expected.abs(),
            "{actual} is not within {rel} of {expected}"
        );
    }

    #[test]
    fn erlang_c_small_exact_case() {
        // c = 3, A = 2: C = (A^3/3! · 3/(3-2)) / (1 + 2 + 2 + 4) = 4/9.
        let q = ErlangC::new(2.0, 1.0, 3);
        close(q.p_wait(), 4.0 / 9.0, 1e-14);
        close(q.asa(), 4.0 / 9.0, 1e-14); // C/(cμ-λ) = (4/9)/1
        close(q.occupancy(), 2.0 / 3.0, 1e-15);
        close(
            q.service_level(1.5),
            1.0 - 4.0 / 9.0 * (-1.5f64).exp(),
            1e-14,
        );
    }

    #[test]
    fn erlang_c_with_one_agent_is_mm1() {
        // M/M/1: P(wait) = ρ, Wq = ρ/(μ-λ), P(W ≤ t) = 1 - ρ e^{-(μ-λ)t}.
        for rho in [0.1, 0.5, 0.8, 0.95] {
            let (lambda, aht) = (rho / 180.0, 180.0);
            let q = ErlangC::new(lambda, aht, 1);
            let mu = 1.0 / aht;
            close(q.p_wait(), rho, 1e-13);
            close(q.asa(), rho / (mu - lambda), 1e-12);
            close(
                q.service_level(20.0),
                1.0 - rho * (-(mu - lambda) * 20.0).exp(),
                1e-13,
            );
            close(q.mean_queue_length(), rho * rho / (1.0 - rho), 1e-12);
        }
    }

    #[test]
    fn erlang_c_textbook_call_centre() {
        // The classic worked example: 100 calls per 30 minutes, 180 s
        // handle time (A = 10 Erlangs), 80/20 target. Published: 14 agents
        // give P(wait) 17.4%, ASA 7.8 s and 88.8% answered within 20 s;
        // 13 agents 79.6%, so 14 is the staffing. Expected values below
        // come from exact rational arithmetic on the textbook formula.
        let q = ErlangC::per_hour(200.0, 180.0, 14);
        close(q.offered_load(), 10.0, 1e-12);
        close(q.p_wait(), 0.174_131_933_595_049_83, 1e-12);
        close(q.asa(), 7.835_937_011_777_243, 1e-12);
        close(q.service_level(20.0), 0.888_350_019_179_466_9, 1e-12);
        close(q.occupancy(), 10.0 / 14.0, 1e-15);
        let expected = [
            (11, 0.682_118_204_689_332_4),
            (12, 0.449_388_224_298_270_86),
            (13, 0.285_270_453_036_492_95),
        ];
        for (c, p) in expected {
            close(ErlangC::per_hour(200.0, 180.0, c).p_wait(), p, 1e-12);
        }
        close(
            ErlangC::per_hour(200.0, 180.0, 13).service_level(20.0),
            0.795_594_788_417_783_1,
            1e-12,
        );
        assert_eq!(
            ErlangC::agents_for_service_level(200.0 / 3600.0, 180.0, 20.0, 0.8, 100),
            Some(14)
        );
    }

    #[test]
    fn erlang_c_large_agent_counts_stay_finite() {
        // A^c/c! overflows f64 here; the recursion does not.
        // Exact rational values: C(100, 90) and C(1000, 980).
        close(
            ErlangC::new(90.0, 1.0, 100).p_wait(),
            0.216_940_480_906_366_4,
            1e-11,
        );
        close(
            ErlangC::new(980.0, 1.0, 1000).p_wait(),
            0.412_200_292_365_281_5,
            1e-10,
        );
        close(
            ErlangC::new(45.0, 1.0, 50).p_wait(),
            0.363_864_467_206_988_4,
            1e-12,
        );
    }

    #[test]
    fn erlang_c_unstable_queue() {
        let q = ErlangC::new(10.0, 1.0, 10);
        assert!(!q.is_stable());
        assert_eq!(q.p_wait(), 1.0);
        assert_eq!(q.asa(), f64::INFINITY);
        assert_eq!(q.service_level(20.0), 0.0);
        assert_eq!(q.occupancy(), 1.0);
    }

    #[test]
    fn erlang_b_known_values() {
        // B(1, A) = A/(1+A); B(2, 1) = (1/2)/(1 + 1 + 1/2) = 1/5.
        close(erlang_b(1, 3.0), 0.75, 1e-15);
        close(erlang_b(2, 1.0), 0.2, 1e-15);
        assert_eq!(erlang_b(0, 5.0), 1.0);
    }

    /// An independent solution of M/M/c+M: the birth-death chain truncated
    /// at `n_max`, normalised directly, with Little's law for the waits.
    fn brute_force(q: &ErlangA, n_max: usize) -> (f64, f64, f64) {
        let (lambda, mu, theta, c) = (
            q.arrival_rate,
            1.0 / q.mean_handle_secs,
            1.0 / q.mean_patience_secs,
            q.agents as usize,
        );
        let mut p = vec![1.0f64];
        for n in 1..=n_max {
            let death = if n <= c {
                n as f64 * mu
            } else {
                c as f64 * mu + (n - c) as f64 * theta
            };
            let next = p[n - 1] * lambda / death;
            p.push(next);
        }
        let total: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= total);
        let p_wait: f64 = p[c..].iter().sum();
        let lq: f64 = p
            .iter()
            .enumerate()
            .skip(c)
            .map(|(n, x)| (n - c) as f64 * x)
            .sum();
        // Abandonments happen at rate θ·Lq: P(abandon) = θ Lq / λ.
        (p_wait, theta * lq / lambda, lq / lambda)
    }

    #[test]
    fn erlang_a_agrees_with_a_brute_force_birth_death_chain() {
        for q in [
            ErlangA::new(1.0 / 20.0, 180.0, 120.0, 8), // A = 9 on 8 agents: overloaded
            ErlangA::new(18.0 / 180.0, 180.0, 300.0, 20), // A = 18
            ErlangA::new(0.5, 1.0, 2.0, 1),
        ] {
            let m = q.metrics();
            let (p_wait, p_abandon, wait_all) = brute_force(&q, 400);
            close(m.p_wait, p_wait, 1e-10);
            close(m.p_abandon, p_abandon, 1e-10);
            close(m.mean_wait_all, wait_all, 1e-10);
            // Flow balance: what is answered keeps the agents busy.
            close(
                m.occupancy,
                q.offered_load() * (1.0 - p_abandon) / f64::from(q.agents),
                1e-10,
            );
            assert!(m.asa < m.mean_wait_all / (1.0 - m.p_abandon) + 1e-9);
        }
    }

    #[test]
    fn erlang_a_tends_to_erlang_c_as_patience_grows() {
        let c = ErlangC::per_hour(200.0, 180.0, 12);
        let a = ErlangA::new(c.arrival_rate, 180.0, 1e9, 12).metrics();
        close(a.p_wait, c.p_wait(), 1e-6);
        close(a.asa, c.asa(), 1e-5);
        assert!(a.p_abandon < 1e-6);
        let a = ErlangA::new(c.arrival_rate, 180.0, 1e9, 12);
        for t in [0.0, 5.0, 20.0, 60.0] {
            close(a.service_level(t), c.service_level(t), 1e-5);
        }
    }

    #[test]
    fn erlang_a_single_agent_closed_form() {
        // c = 1, caller alone in the queue (k = 0): answered within t with
        // probability μ/(μ+θ)·(1 - e^{-(μ+θ)t}); check the uniformization.
        let (mu, theta, t) = (1.0 / 180.0, 1.0 / 60.0, 45.0);
        let g = answered_within(mu, theta, 3, t);
        close(
            g[0],
            mu / (mu + theta) * (1.0 - (-(mu + theta) * t).exp()),
            1e-12,
        );
        // k = 1: V = Exp(μ) + Exp(μ+θ); E[e^{-θV}1{V≤t}] by the density of
        // the tilted sum, rates r1 = μ+θ, r2 = μ+2θ.
        let (r1, r2) = (mu + theta, mu + 2.0 * theta);
        let cdf = 1.0 - (r2 * (-r1 * t).exp() - r1 * (-r2 * t).exp()) / (r2 - r1);
        close(g[1], mu / (mu + 2.0 * theta) * cdf, 1e-12);
        // Long thresholds: everyone who will be answered is answered.
        let q = ErlangA::new(1.0 / 200.0, 180.0, 60.0, 1);
        let m = q.metrics();
        close(q.service_level(1e6), 1.0 - m.p_abandon, 1e-9);
    }

    #[test]
    fn erlang_a_service_level_is_monotone_and_bounded() {
        let q = ErlangA::new(1.0 / 9.0, 180.0, 90.0, 20);
        let m = q.metrics();
        let mut last = q.service_level(0.0);
        close(last, 1.0 - m.p_wait, 1e-12);
        for t in [1.0, 10.0, 20.0, 60.0, 300.0] {
            let sl = q.service_level(t);
            assert!(sl > last && sl < 1.0 - m.p_abandon, "{sl} at {t}");
            last = sl;
        }
    }
}
