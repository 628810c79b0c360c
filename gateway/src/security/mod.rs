//! Who may connect and what they may do: the password file, the ACL, tokens.
//!
//! These are plain data and checks with no I/O beyond reading their files; the connection
//! handling decides where they run (password hashing off the broker's task).

pub mod acl;
pub mod lockout;
pub mod password_file;
pub mod tls;
pub mod token;
