#!/bin/sh
# Runs inside the CVM before the containers start.
echo "pre-launch: shop-api"
