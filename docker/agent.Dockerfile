# The stepstack-agent image: nothing but the static agent binary.
#
# An init container runs `/stepstack-agent install /stepstack/bin` to copy the binary
# into an emptyDir; the step's main container then runs
# `/stepstack/bin/stepstack-agent run --spec FILE -- <command>` in the user's image.
#
# Build the static binary first, then the image (see crates/agent/README.md):
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p stepstack-agent \
#       --target x86_64-unknown-linux-gnu
#   buildah bud -f docker/agent.Dockerfile \
#       --build-arg AGENT=target/x86_64-unknown-linux-gnu/release/stepstack-agent \
#       -t REGISTRY/stepstack-agent:VERSION .
FROM scratch
ARG AGENT=target/x86_64-unknown-linux-gnu/release/stepstack-agent
COPY ${AGENT} /stepstack-agent
USER 65534:65534
ENTRYPOINT ["/stepstack-agent"]
CMD ["--help"]
