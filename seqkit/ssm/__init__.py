"""State-space cores (S4, S4D, DSS, S5, Mega's EMA) and the pure functions behind them."""

from seqkit.kernels import cauchy as cauchy, vandermonde as vandermonde

from ._base import (
    AbstractSSMCore as AbstractSSMCore,
    DiscreteSystem as DiscreteSystem,
    SSMState as SSMState,
    ssm_step as ssm_step,
)
from ._conv import fft_conv as fft_conv
from ._discretize import discretize_bilinear as discretize_bilinear, discretize_zoh as discretize_zoh
from ._dss import DSS as DSS, DSSSoftmaxState as DSSSoftmaxState, dss_kernel as dss_kernel
from ._ema import EMA as EMA, ema_kernel as ema_kernel
from ._hippo import HiPPOLegS as HiPPOLegS, hippo_legs as hippo_legs, inv as inv, legs as legs, lin as lin
from ._s4 import S4 as S4, s4_kernel as s4_kernel
from ._s4d import S4D as S4D, s4d_kernel as s4d_kernel
from ._s5 import S5 as S5, S5State as S5State, s5_discretize as s5_discretize, s5_scan as s5_scan
