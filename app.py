#!/usr/bin/env python3
"""CDK app entry point: `npx cdk synth` / `npx cdk deploy` run this (see cdk.json)."""

import aws_cdk as cdk

app = cdk.App()
app.synth()
