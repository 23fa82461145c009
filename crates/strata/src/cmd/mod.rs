//! One file per group of commands; each speaks the HTTP API through a [`target::Target`].

pub mod archive;
pub mod bench;
pub mod events;
pub mod groups;
pub mod serve;
pub mod target;
