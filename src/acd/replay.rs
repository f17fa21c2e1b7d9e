//! Replay of a recorded period under another routing configuration.
