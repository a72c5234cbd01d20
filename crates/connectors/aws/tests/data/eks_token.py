#!/usr/bin/env python3
"""Independent reference for the EKS bearer token (zenml.md section 4.5, `aws eks get-token`).

Standard library only: SigV4 query presigning of STS GetCallerIdentity with the signed
`x-k8s-aws-id` header, written from the AWS SigV4 specification rather than from the Rust
code. When botocore is importable, the signature is also cross-checked against botocore's
own presigner (the code behind `aws eks get-token`).

Run:  python3 eks_token.py > eks_token_expected.txt
The Rust test `tests/token.rs` compares its tokens with that file.
"""
import base64
import datetime
import hashlib
import hmac
import urllib.parse

CASES = [
    # name, access key, secret key, session token, region, STS host, cluster, time
    ("long-lived-eu-west-1", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None,
     "eu-west-1", "sts.eu-west-1.amazonaws.com", "zenhacks-cluster", "2024-01-02T03:04:05Z"),
    ("session-token-us-east-1", "ASIAEXAMPLE0000000001", "c2VjcmV0/with+chars=",
     "FwoGZXIvYXdzEXAMPLE//token+with/slashes==", "us-east-1", "sts.us-east-1.amazonaws.com",
     "prod_cluster-1", "2025-06-30T23:59:59Z"),
    ("china-cn-north-1", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None,
     "cn-north-1", "sts.cn-north-1.amazonaws.com.cn", "beijing", "2024-01-02T03:04:05Z"),
    ("govcloud-us-gov-west-1", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None,
     "us-gov-west-1", "sts.us-gov-west-1.amazonaws.com", "gov", "2024-01-02T03:04:05Z"),
]


def quote(value):
    return urllib.parse.quote(value, safe="-_.~")


def sign(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def token(access_key, secret_key, session_token, region, host, cluster, when):
    t = datetime.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ")
    amz_date = t.strftime("%Y%m%dT%H%M%SZ")
    date = t.strftime("%Y%m%d")
    scope = f"{date}/{region}/sts/aws4_request"
    params = [
        ("Action", "GetCallerIdentity"),
        ("Version", "2011-06-15"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", "60"),
        ("X-Amz-SignedHeaders", "host;x-k8s-aws-id"),
    ]
    if session_token:
        params.append(("X-Amz-Security-Token", session_token))
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted((quote(k), quote(v)) for k, v in params))
    canonical_headers = f"host:{host}\nx-k8s-aws-id:{cluster}\n"
    canonical_request = "\n".join([
        "GET", "/", canonical_query, canonical_headers, "host;x-k8s-aws-id",
        hashlib.sha256(b"").hexdigest(),
    ])
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
    ])
    key = sign(sign(sign(sign(("AWS4" + secret_key).encode("utf-8"), date), region), "sts"), "aws4_request")
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    # URL parameter order as the Rust signer (aws-sigv4) writes it: the request's own
    # parameters, the auth parameters, the signature, then the session token.
    ordered = params[:7] + [("X-Amz-Signature", signature)]
    if session_token:
        ordered.append(("X-Amz-Security-Token", session_token))
    url = f"https://{host}/?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in ordered)
    encoded = base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")
    return "k8s-aws-v1." + encoded, signature


def botocore_signature(access_key, secret_key, session_token, region, host, cluster, when):
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
    except ImportError:
        return None
    creds = botocore.credentials.Credentials(access_key, secret_key, session_token)
    signer = botocore.auth.SigV4QueryAuth(creds, "sts", region, expires=60)
    request = botocore.awsrequest.AWSRequest(
        method="GET",
        url=f"https://{host}/?Action=GetCallerIdentity&Version=2011-06-15",
        headers={"x-k8s-aws-id": cluster},
    )
    import unittest.mock
    t = datetime.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ")
    with unittest.mock.patch("botocore.auth.get_current_datetime", lambda: t):
        signer.add_auth(request)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    return query["X-Amz-Signature"][0]


if __name__ == "__main__":
    import sys
    for name, *args in CASES:
        value, signature = token(*args)
        theirs = botocore_signature(*args)
        if theirs is not None and theirs != signature:
            sys.exit(f"{name}: botocore signs {theirs}, this script {signature}")
        checked = "botocore-checked" if theirs is not None else "stdlib-only"
        print(f"{name} {value}")
        print(f"# {name}: signature {signature} ({checked})", file=sys.stderr)
