//! Erlang C (being written).
