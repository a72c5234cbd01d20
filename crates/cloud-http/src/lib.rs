#![doc = include_str!("../README.md")]

mod client;
mod error;
mod jwt;
mod pem;
mod source;
mod token;

pub use client::{
    HttpClient, HttpResponse, REQUEST_TIMEOUT, bearer_header, bearer_request, form_request,
    http_client, send,
};
pub use error::HttpError;
pub use jwt::RsaSigner;
pub use pem::{pem_certificates, pem_private_key};
pub use source::{IssuedTokenSource, TokenIssuer};
pub use token::{AccessToken, TokenCache};
