# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab-llm endpoint over plain HTTP(S): client (the gate's routes) and the runner of lab.llm.serve_api_key."""
