"""The stack: `infrastructure/stack.yaml` as a model, its deployment to an AWS endpoint, and the Lambda zips."""
