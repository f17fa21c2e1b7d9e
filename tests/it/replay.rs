//! `switchboard acd replay`: a recorded day re-run under another strategy.
