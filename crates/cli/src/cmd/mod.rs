pub mod agent;
pub mod bench;
pub mod check;
pub mod hash_password;
pub mod inventory;
pub mod scan;
pub mod serve;
pub mod validate;
