"""State-space cores (S4, S4D, DSS, Mega's EMA) and the pure functions behind them."""

from seqkit.kernels import cauchy as cauchy
from seqkit.kernels import vandermonde as vandermonde

from ._base import (
    AbstractSSMCore as AbstractSSMCore,
)
from ._base import (
    DiscreteSystem as DiscreteSystem,
)
from ._base import (
    SSMState as SSMState,
)
from ._base import (
    ssm_step as ssm_step,
)
from ._conv import fft_conv as fft_conv
from ._discretize import discretize_bilinear as discretize_bilinear
from ._discretize import discretize_zoh as discretize_zoh
from ._dss import DSS as DSS
from ._dss import dss_kernel as dss_kernel
from ._ema import EMA as EMA
from ._ema import ema_kernel as ema_kernel
from ._hippo import HiPPOLegS as HiPPOLegS
from ._hippo import hippo_legs as hippo_legs
from ._hippo import inv as inv
from ._hippo import legs as legs
from ._hippo import lin as lin
from ._s4 import S4 as S4
from ._s4 import s4_kernel as s4_kernel
from ._s4d import S4D as S4D
from ._s4d import s4d_kernel as s4d_kernel
