//! trace-cmd `trace.dat` ring-buffer pages: the page walk ([`pages`]) and the records'
//! number fields ([`fields`]).

pub mod fields;
pub mod pages;
